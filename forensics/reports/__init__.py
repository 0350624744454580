"""Audit reports: HTML, PDF and JSON renderings of an audit result (issue 6)."""
