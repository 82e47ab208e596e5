"""Deep parsing: charts to data, chemistry to SMILES, geometry, figures re-read, typed tables.

Everything here works on the document model after the first pass. The pieces that need no
model (typed tables, merged tables, reading chart/SMILES/geometry text) are pure functions;
the region re-parse plans engine requests for crops and splices the results back.
"""

from dsocr_connectors.deep.annotate import annotate_page, annotate_table
from dsocr_connectors.deep.charts import chart_from_rows, chart_to_table, parse_chart
from dsocr_connectors.deep.chemistry import find_smiles, read_smiles
from dsocr_connectors.deep.financial import TypedTable, type_table
from dsocr_connectors.deep.geometry import parse_geometry
from dsocr_connectors.deep.numbers import ParsedValue, detect_scale, parse_value
from dsocr_connectors.deep.routing import RoutingPolicy, classify_region, route
from dsocr_connectors.deep.table_merge import (
    DocumentTable,
    document_tables,
    link_continued_tables,
    merged_table,
)

__all__ = [
    "DocumentTable",
    "ParsedValue",
    "RoutingPolicy",
    "TypedTable",
    "annotate_page",
    "annotate_table",
    "chart_from_rows",
    "chart_to_table",
    "classify_region",
    "detect_scale",
    "document_tables",
    "find_smiles",
    "link_continued_tables",
    "merged_table",
    "parse_chart",
    "parse_geometry",
    "parse_value",
    "read_smiles",
    "route",
    "type_table",
]
