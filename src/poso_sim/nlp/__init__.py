"""poso_sim.nlp"""
