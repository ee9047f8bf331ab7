"""Defaults of the hybrid search and its evaluation, shared by the library and the CLI (no heavy imports).

Measured on the validation split (README "Geo-cells"): restricting the neighbours to the top cells
lowered Recall@1 at every setting tried, least with the 3 best cells of the coarsest level. So
`geoloc search` reports the cell probabilities without restricting (top cells 0) unless asked, and
`geoloc evaluate --cells` measures the hybrid at that least-harmful setting.
"""

SEARCH_TOP_CELLS = 0
EVAL_TOP_CELLS = 3
EVAL_CELL_LEVEL = 0
SHOW_CELLS = 5
