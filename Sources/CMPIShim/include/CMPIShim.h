// CMPIShim: the only code in SwiftBERT that includes <mpi.h>.
//
// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) are macros that expand to
// addresses of internal globals, which Swift cannot import. This shim exposes the handful of MPI calls
// SwiftBERT uses as plain C functions over opaque handles, always on the world communicator. Every
// function returns an MPI error code (MPI_SUCCESS == 0); Swift turns non-zero codes into errors.
#ifndef CMPISHIM_H
#define CMPISHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Element types of the reductions.
typedef enum {
    CMPIShim_float = 0,
    CMPIShim_double = 1,
    CMPIShim_int64 = 2,
    CMPIShim_byte = 3,
} CMPIShim_datatype;

/// Thread support levels, in MPI's order.
typedef enum {
    CMPIShim_thread_single = 0,
    CMPIShim_thread_funneled = 1,
    CMPIShim_thread_serialized = 2,
    CMPIShim_thread_multiple = 3,
} CMPIShim_thread_level;

/// An outstanding non-blocking operation.
typedef struct CMPIShim_request CMPIShim_request;

/// MPI_Init_thread, then MPI_ERRORS_RETURN on the world communicator so failures come back as codes.
int CMPIShim_init(int requested, int *provided);
int CMPIShim_finalized(int *flag);
int CMPIShim_finalize(void);
int CMPIShim_rank(int *rank);
int CMPIShim_size(int *size);
/// Writes a NUL-terminated name into `name` (at most `capacity` bytes, including the NUL).
int CMPIShim_processor_name(char *name, int capacity);
/// "Open MPI v4.1.4, ..." into `version` (NUL-terminated, truncated to `capacity`).
int CMPIShim_library_version(char *version, int capacity);
/// The largest length in bytes of a processor name (MPI_MAX_PROCESSOR_NAME).
int CMPIShim_max_processor_name(void);

int CMPIShim_barrier(void);
int CMPIShim_broadcast(void *buffer, int64_t count, CMPIShim_datatype type, int root);
/// In-place sum over all ranks.
int CMPIShim_allreduce_sum(void *buffer, int64_t count, CMPIShim_datatype type);
/// Starts an in-place sum; `*request` must be completed with CMPIShim_wait or CMPIShim_test.
int CMPIShim_iallreduce_sum(void *buffer, int64_t count, CMPIShim_datatype type,
                            CMPIShim_request **request);
/// `receive` holds size * count elements: rank r's `send` lands at r * count.
int CMPIShim_allgather(const void *send, void *receive, int64_t count, CMPIShim_datatype type);
/// Waits for completion and frees the request.
int CMPIShim_wait(CMPIShim_request *request);
/// Sets `*done` to 1 and frees the request when complete; leaves it alone otherwise.
int CMPIShim_test(CMPIShim_request *request, int *done);
int CMPIShim_abort(int code);
/// MPI's text for an error code.
void CMPIShim_error_string(int code, char *message, int capacity);

#ifdef __cplusplus
}
#endif

#endif
