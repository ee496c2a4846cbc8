"""poso_sim.scenarios"""
