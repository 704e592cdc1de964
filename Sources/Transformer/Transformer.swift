// The Transformer module; see DESIGN.md.
