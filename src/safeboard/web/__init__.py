"""The browser side: pages and their static assets (no inline script: the CSP forbids it)."""
