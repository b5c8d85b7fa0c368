"""``GET /reports/...``: what indexing found worth a merchandiser's look."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import EngineDep

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/import", summary="Catalogue rows that could not be imported")
def import_report(engine: EngineDep) -> dict[str, Any]:
    """The serving snapshot's import report: rows read, products kept, and each bad row with
    its row number, field and reason.

    Raises:
        HTTPException: The snapshot carries no import report (404).
    """
    report = engine.import_report()
    if report is None:
        raise HTTPException(404, "the serving snapshot carries no import report")
    return report


@router.get("/colours", summary="Colour conflicts, unreadable photos, unknown colour values")
def colour_report(engine: EngineDep) -> dict[str, Any]:
    """The serving snapshot's colour report: products whose catalogue colour disagrees with
    their main photo (``conflicts``: a wrong PIM colour is a real catalogue bug), photos that
    could not be read (``photo_errors``), and colour values that are no known colour name
    (``unrecognised``).

    Raises:
        HTTPException: The snapshot was built without a colour report (404).
    """
    report = engine.colour_report()
    if report is None:
        raise HTTPException(404, "the serving snapshot carries no colour report")
    return report
