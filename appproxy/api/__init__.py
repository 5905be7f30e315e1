"""The control API (CircuitService) served to the manager."""
