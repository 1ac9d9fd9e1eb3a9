"""``python -m applications.hpo.ijcnn1``: see :mod:`applications.hpo.ijcnn1.command`."""

import sys

from applications.hpo.ijcnn1.command import cli

sys.exit(cli())
