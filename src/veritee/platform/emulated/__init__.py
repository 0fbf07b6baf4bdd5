"""The emulated (software, insecure by name) TEE platform."""
