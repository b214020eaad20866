"""The embedded broker lives in `inspector.plc.broker`; `inspector.broker` is kept as another name of that module."""

import sys

from inspector.plc import broker

sys.modules[__name__] = broker
