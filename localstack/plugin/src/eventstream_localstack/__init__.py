"""EventStream's LocalStack plugin: runs Lambda functions as local processes instead of Docker containers."""
