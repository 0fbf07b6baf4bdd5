"""Public test fakes that sign for real, so the production verification path runs unchanged."""
