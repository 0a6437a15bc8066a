"""`maker report`: where a run's samples, errors and money went, as Markdown and PNG plots."""
