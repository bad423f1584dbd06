from tests.torture.report import FIGURES, table


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.write_sep("=", "torture figures")
        terminalreporter.write_line(table())
