# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the certificate and key of DOMAIN from a Traefik acme.json to
LIVE_DIR/DOMAIN/fullchain.pem and key.pem, as DMS does for SSL_TYPE=letsencrypt.

Usage: python3 acme_extract.py ACME_JSON DOMAIN LIVE_DIR
A certificate matches when DOMAIN is its main domain or one of its SANs. Exit 1
when no certificate matches."""
import base64
import json
import os
import sys


def certificates(data):
    """Every certificate entry of the file: Traefik v2 keeps them per resolver."""
    if isinstance(data, dict) and 'Certificates' in data:
        yield from data.get('Certificates') or []
    elif isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict):
                yield from value.get('Certificates') or []


def main(path, domain, live):
    with open(path, encoding='utf-8') as handle:
        data = json.load(handle)
    for cert in certificates(data):
        names = cert.get('domain') or {}
        if domain == names.get('main') or domain in (names.get('sans') or []):
            target = os.path.join(live, domain)
            os.makedirs(target, exist_ok=True)
            for name, field, mode in (('key.pem', 'key', 0o600), ('fullchain.pem', 'certificate', 0o644)):
                out = os.path.join(target, name)
                with open(out, 'wb') as handle:
                    handle.write(base64.b64decode(cert[field]))
                os.chmod(out, mode)
            return 0
    return 1


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:4]))
