// The Training module; see DESIGN.md.
