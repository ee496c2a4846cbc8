"""poso_sim.cases"""
