"""Result tables that tests want printed in the log (see conftest.pytest_terminal_summary)."""
REPORT_TABLES: list[str] = []
