"""Dataset importers: each turns one source layout into Images/, Labels/, classes.txt and an import report."""
from __future__ import annotations

from utils.importers.common import ImportSummary, LeftOut
from utils.importers.flood import import_flood
from utils.importers.isbi2012 import import_isbi2012
from utils.importers.lgg import import_lgg
from utils.importers.liver import import_liver
from utils.importers.msrc import import_msrc
from utils.importers.pairs import import_pairs

__all__ = ["ImportSummary", "LeftOut", "import_flood", "import_isbi2012", "import_lgg", "import_liver",
           "import_msrc", "import_pairs"]
