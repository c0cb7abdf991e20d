"""The embedded synthetic_cells dataset: procedural nuclei-like images, no download."""
