"""The local AWS host: runtime, moto and its patches, Lambda invoker, event router, IoT SQL, alarms, MQTT broker and
policy, provisioning."""
