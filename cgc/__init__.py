"""Cell-Graph Compass."""
