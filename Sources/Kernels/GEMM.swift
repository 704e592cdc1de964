import COpenBLAS

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none
    case transposed

    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// `c = alpha * op(a) * op(b) + beta * c`, all matrices row-major.
///
/// `op(a)` is (m, k), `op(b)` is (k, n), `c` is (m, n); `lda`, `ldb`, `ldc` are the row strides of
/// the matrices as stored (before the transpose), as in CBLAS. A linear layer `y = x W^T` with
/// `W` stored `[out, in]` is `gemm(.none, .transposed, m: rows, n: out, k: in, a: x, b: W, c: y)`.
public func gemm(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int? = nil,
    b: UnsafePointer<Float>, ldb: Int? = nil,
    beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int? = nil
) {
    let lda = lda ?? (transA == .none ? k : m)
    let ldb = ldb ?? (transB == .none ? n : k)
    let ldc = ldc ?? n
    precondition(m >= 0 && n >= 0 && k >= 0, "gemm: negative size")
    precondition(lda >= max(1, transA == .none ? k : m), "gemm: lda \(lda) too small")
    precondition(ldb >= max(1, transB == .none ? n : k), "gemm: ldb \(ldb) too small")
    precondition(ldc >= max(1, n), "gemm: ldc \(ldc) too small")
    if m == 0 || n == 0 { return }
    if m == 1 && k > 0 {
        // One row (a token being generated, one query): a matrix-vector product, which streams op(b)
        // once instead of packing it first as sgemm does.
        let incx = Int32(transA == .none ? 1 : lda)
        if transB == .none {
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(n), alpha, b, Int32(ldb), a, incx, beta, c, 1)
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), alpha, b, Int32(ldb), a, incx, beta, c, 1)
        }
        return
    }
    if transA == .none && beta == 0 && m <= fewRowLimit && k * n >= fewRowMinimumMatrix {
        // A few rows (a batch of tokens being generated): op(b) read once for all of them.
        if transB == .none {
            fewRowsTimesMatrix(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        } else {
            fewRowsTimesTransposed(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        }
        return
    }
    cblas_sgemm(
        CblasRowMajor, transA.cblas, transB.cblas,
        Int32(m), Int32(n), Int32(k),
        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
