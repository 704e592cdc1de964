// The Distributed module; see DESIGN.md.
