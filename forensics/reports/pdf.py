"""The PDF report: WeasyPrint renders the same self-contained HTML page (A4, page numbers)."""

from __future__ import annotations

import logging
from pathlib import Path

from forensics.core.errors import ForensicsInputError


def write_pdf(html_text: str, path: str | Path) -> None:
    """Render ``html_text`` (the HTML report) to a PDF file at ``path``.

    WeasyPrint needs the Pango system libraries; when they are missing the error says so
    in one line instead of a traceback.
    """
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as err:  # OSError: WeasyPrint could not load Pango
        raise ForensicsInputError(
            f"cannot write report.pdf: WeasyPrint is not usable here ({str(err).splitlines()[0]}); "
            "install it with its system libraries (Pango)"
        ) from None
    for name in ("weasyprint", "fontTools", "fontTools.subset"):  # font-subsetting chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    HTML(string=html_text, base_url=None).write_pdf(str(path))
