"""The minidriver-style card edge: the cards seen through the Microsoft Smart Card Minidriver model (card files
cardid, cardcf, cardapps, mscp/cmapfile and the container certificates; key containers; the user and admin PIN
roles; CardSignData, CardRSADecrypt and ECDH agreements), over the same card service and store the PKCS#11
module uses. Functions answer the specification's SCARD_* / NTE_* codes through MinidriverError.
"""
