"""Greengrass v2's control plane: ``service`` routes the REST API over components, deployments (and their IoT
jobs), core devices and the account's service role."""
