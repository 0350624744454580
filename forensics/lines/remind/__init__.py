"""REMIND (the ``remind`` line) and its loss-landscape scans."""
