"""Sensors the agent can read: a real BME280 over I2C, or a virtual one."""
