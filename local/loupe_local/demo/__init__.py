"""The demo (`loupe demo`): its stages, context, shadow and canary steps, evaluation, report and synthetic data."""
