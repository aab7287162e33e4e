"""A TLS-terminating TCP proxy for flowd's exporter tests: accepts TLS on 127.0.0.1:LISTEN with
CERT and KEY, requires a client certificate signed by CA, and forwards the plaintext to
127.0.0.1:TARGET. Python's own ssl module does the TLS, so the exporter's TLS client is checked
against an implementation nobody here wrote. LISTEN 0 takes a free port. Prints "ready PORT"
once it accepts.

  tls_proxy.py LISTEN TARGET CERT KEY CA
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(listen, target, cert, key, ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED

    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, ssl=context)
    print("ready %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen, target, cert, key, ca = sys.argv[1:]
    asyncio.run(main(int(listen), int(target), cert, key, ca))
