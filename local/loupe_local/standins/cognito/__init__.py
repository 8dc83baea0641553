"""Cognito user pools' sign-in checks moto lacks: ``service`` (allowed flows, answers that hide who has an account)
over ``srp`` (the server side of the SRP password proof)."""
