"""Pilots (issue 16): prepare a vit.data.contours set with generator settings the prepare stage does not
expose (instances, clutter, styles, fills, scale), in the prepared format, for docs/pilots/upstream.py.
Run from the repository root:

    .venv/bin/python docs/pilots/contours_set.py /tmp/pilot/data/tex 10000 24 \
        '{"instances": 1, "clutter": false, "styles": 3, "fills": 3}'
"""
import json
import sys
from pathlib import Path

from vit.data import contours
from vit.data import prepare as P

out, n, classes, knobs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
make = contours.contours
contours.contours = lambda *a, **kw: make(*a, **{**kw, **knobs})  # the prepare stage's call, with the knobs
P.prepare(P.Config(name=out.name, source="contours", out=str(out), group="upstream", train=n, val=1000, test=0,
                   size=64, classes=classes))
