import os
import sys

# `fakes` sits beside the tests; make it importable whatever the rootdir/import mode.
sys.path.insert(0, os.path.dirname(__file__))
