"""`python -m syncse.report NOTEBOOK HTML`: the report stage's last step (`syncse.report.page`)."""

from syncse.report.page import main

main()
