"""The registry: every method of the paper's comparison, in the paper's Table 2 order."""

from methods import byol, cross, mae, rgmim, scratch, simsiam, skd, transfer
from methods.base import Method

METHODS: dict[str, Method] = {
    "rgmim": rgmim.METHOD,
    "mae": mae.METHOD,
    "skd": skd.METHOD,
    "cross": cross.METHOD,
    "byol": byol.METHOD,
    "simsiam": simsiam.METHOD,
    "transfer": transfer.METHOD,
    "scratch": scratch.METHOD,
}
