"""Where these names used to live (before data/ was split into base, files, tables and columns): import them from
``llmhead.data``. Kept until the last ``llmhead.data.read`` import is gone."""

from llmhead.data import (  # noqa: F401
    MAX_REPORTED,
    DataError,
    NotATableError,
    Table,
    fold_label,
    read_inputs,
    read_raw_labels,
    read_table,
    read_texts,
    require_columns,
    suspicious_labels,
)
from llmhead.data.files import FILE_FORMATS  # noqa: F401
