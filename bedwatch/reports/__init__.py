"""Reports as PDF: the street office's operations report and a resident's sleep report."""
