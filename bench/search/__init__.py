"""The accuracy-budget search: the fastest artifact that stays within a budget on validation."""
