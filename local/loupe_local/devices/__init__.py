"""Local Greengrass core devices: the fleet, one device's runtime and lifecycle, recipes, IPC authorization, nucleus
MQTT, token exchange."""
