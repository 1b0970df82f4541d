/* hw_net: network counters and the node's private address.
 *
 * Counters: bytes and packets received/sent since boot, summed over every
 * interface of <root>/proc/net/dev except loopback ("lo"). Virtual
 * interfaces (docker0, veth*, bridges) are included: they carry the
 * deployments' traffic, and the kernel counts a packet once per interface it
 * crosses, as every tool built on /proc/net/dev does.
 *
 * Private address: the IPv4 address of the interface that holds the default
 * route with the lowest metric in <root>/proc/net/route, not merely the first
 * interface; else the first non-loopback, non-link-local IPv4; else
 * "127.0.0.1". */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct hw_net_counters {
        uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
        unsigned interfaces; /* counted */
} hw_net_counters;

/* Pure parser of /proc/net/dev. Returns 0 or -EBADMSG. */
int hw_net_parse_dev(const char *text, size_t len, hw_net_counters *ret);
int hw_net_read_at(int root_fd, hw_net_counters *ret);

/* Pure parser of /proc/net/route: writes the interface of the default route
 * with the lowest metric (NUL-terminated, at most IFNAMSIZ). Returns 0, or
 * -ENOENT when there is no default route. */
int hw_net_parse_default_route(const char *text, size_t len, char *ifname, size_t size);

/* Writes the private IPv4 address (see above) to out; always writes
 * something. Returns 0 when an address was found, -ENOENT for the
 * "127.0.0.1" fallback. */
int hw_net_private_ip(int root_fd, char *out, size_t size);
