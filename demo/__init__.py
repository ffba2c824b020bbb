"""The pulldoctor demo: a local fleet of registries with real faults, diagnosed one by one."""
