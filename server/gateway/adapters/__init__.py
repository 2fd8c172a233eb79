"""Adapters: the ports implemented over AWS (aioboto3), HTTP and the offline agent model."""
