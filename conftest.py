"""Repository-wide pytest set-up, loaded before any test module imports torch.

One intra-op thread: the tests run many small tensor operations, which two threads on a
two-core machine only slow down. Nothing is ever fetched from a model hub.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
