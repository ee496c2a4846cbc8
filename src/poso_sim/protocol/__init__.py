"""poso_sim.protocol"""
