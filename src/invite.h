/*
** invite.h — one-time, expiring invite links: an operator lets one email
** create its account, even where sign-up is closed.
**
** Contract:
**   - An invite is "cci1.<expires_ms>.<nonce>.<email hex>.<mac>", mac =
**     HMAC-SHA256(key, everything before ".<mac>") in lower-case hex. The
**     email travels in the link (the sign-up form shows it, locked); nothing
**     is stored when an invite is made.
**   - The key (CC_INVITE_KEY_BYTES) is the server's invite key, kept by the
**     caller beside the ledger so the operator's CLI and the server share it.
**   - cc_invite_mint refuses an invalid email (CC_ERR_INVALID "email") and a
**     lifetime outside 1..CC_INVITE_TTL_MS_MAX (CC_ERR_INVALID "ttl_ms").
**   - cc_invite_verify compares MACs in constant time and never reads past
**     CC_INVITE_BYTES_MAX bytes: a malformed, cut or forged invite is
**     CC_ERR_INVALID (field "invite"); an expired one CC_ERR_STATE (field
**     "invite", expires_ms still filled). Used once: the caller creates the
**     account for the email, so a second use meets the existing account.
**   - Pure functions of their arguments; thread-safe.
*/
#ifndef CC_INVITE_H
#define CC_INVITE_H

#include "cc_common.h"

#define CC_INVITE_KEY_BYTES 32
#define CC_INVITE_TTL_MS_MAX (30LL * 24 * 3600 * 1000)  /* an invite lives a month at most */
#define CC_INVITE_BYTES_MAX (5 + 19 + 1 + 32 + 1 + 2 * CC_EMAIL_BYTES_MAX + 1 + 64)

cc_rc cc_invite_mint(const unsigned char key[CC_INVITE_KEY_BYTES], const char *email, int64_t now_ms,
                     int64_t ttl_ms, char *out, size_t out_bytes, cc_error *err);

cc_rc cc_invite_verify(const unsigned char key[CC_INVITE_KEY_BYTES], const char *invite, int64_t now_ms,
                       char *email_out, size_t email_bytes, int64_t *expires_ms, cc_error *err);

#endif
