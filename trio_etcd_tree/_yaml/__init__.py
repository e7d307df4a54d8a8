"""etcd subtrees as YAML and back: what ``etcd2yaml`` writes and ``yaml2etcd`` reads.

``scalars`` (values <-> bytes), ``document`` (parsing, with limits), ``keys`` (a document's
etcd keys), ``emit`` (keys -> YAML text), ``dump`` (``dump_yaml``), ``load``
(``plan_load``, ``load_yaml``), ``progress`` (statistics of long work). docs/tools.rst
describes the form and the rules.
"""

from __future__ import annotations

from .._core.errors import DocumentError, DocumentLimitError
from .document import MAX_REQUEST_BYTES, Limits, parse_yaml, recorded_revision
from .dump import dump_yaml
from .keys import Types, document_keys
from .load import MAX_TXN_OPS, LoadPlan, LoadResult, apply_plan, load_yaml, plan_load
from .progress import Progress
from .scalars import Plain, decode_value, encode_value, typed_value

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_TXN_OPS",
    "DocumentError",
    "DocumentLimitError",
    "Limits",
    "LoadPlan",
    "LoadResult",
    "Plain",
    "Progress",
    "Types",
    "apply_plan",
    "decode_value",
    "document_keys",
    "dump_yaml",
    "encode_value",
    "load_yaml",
    "parse_yaml",
    "plan_load",
    "recorded_revision",
    "typed_value",
]
