"""poso_sim.sim"""
