//! Packet loss concealment for G.711 in the spirit of ITU-T G.711 Appendix I.
