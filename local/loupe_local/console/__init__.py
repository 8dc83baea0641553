"""People at the local console: bot labelers, Cognito sign-in, `loupe labelers`."""
