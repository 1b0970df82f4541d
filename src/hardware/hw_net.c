#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>

#include "core/util.h"
#include "hardware/hw_net.h"
#include "hardware/hw_proc.h"

/* /proc/net/dev is ~130 bytes per interface: the stack buffer holds ~60;
 * Docker hosts with hundreds of veths spill to the heap. */
#define NET_DEV_BUF 8192
#define NET_DEV_MAX (4 * 1024 * 1024)
#define NET_ROUTE_BUF 4096
#define NET_ROUTE_MAX (4 * 1024 * 1024)

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int hw_net_parse_dev(const char *text, size_t len, hw_net_counters *ret) {
        const char *p = text, *end = text + len, *eol, *colon, *name, *q;
        hw_net_counters c = { 0 };
        bool any = false;
        uint64_t f[10];
        size_t nlen;
        int i;

        for (; p < end; p = eol < end ? eol + 1 : end) {
                eol = hw_proc_eol(p, end);
                /* Interface names cannot contain ':' (dev_valid_name). */
                colon = memchr(p, ':', (size_t)(eol - p));
                if (!colon)
                        continue;
                name = hw_proc_skip_blank(p, colon);
                nlen = (size_t)(colon - name);
                q = colon + 1;
                for (i = 0; i < 10; i++) {
                        q = hw_proc_skip_blank(q, eol);
                        if (!hw_proc_scan_u64(&q, eol, &f[i]))
                                break;
                }
                if (nlen == 0 || i < 10)
                        continue;
                any = true;
                if (nlen == 2 && memcmp(name, "lo", 2) == 0)
                        continue;
                c.rx_bytes = add_sat(c.rx_bytes, f[0]);
                c.rx_packets = add_sat(c.rx_packets, f[1]);
                c.tx_bytes = add_sat(c.tx_bytes, f[8]);
                c.tx_packets = add_sat(c.tx_packets, f[9]);
                c.interfaces++;
        }
        if (!any)
                return -EBADMSG;
        *ret = c;
        return 0;
}

int hw_net_read_at(int root_fd, hw_net_counters *ret) {
        char buf[NET_DEV_BUF];
        hw_proc_text t;
        int r;

        r = hw_proc_read(root_fd, "proc/net/dev", buf, sizeof(buf), NET_DEV_MAX, &t);
        if (r >= 0) {
                r = hw_net_parse_dev(t.data, t.len, ret);
                hw_proc_text_done(&t);
        }
        return r;
}

/* dev_valid_name(): no '/', ':' or whitespace; we also refuse control
 * bytes, so the name can be used as is. */
static bool valid_ifname(const char *s, size_t n) {
        size_t i;

        if (n == 0 || n >= IFNAMSIZ)
                return false;
        for (i = 0; i < n; i++)
                if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f || s[i] == '/' || s[i] == ':')
                        return false;
        return true;
}

static bool next_hex(const char **q, const char *eol, uint64_t *ret) {
        *q = hw_proc_skip_blank(*q, eol);
        return hw_proc_scan_hex(q, eol, ret);
}

static bool next_dec(const char **q, const char *eol, uint64_t *ret) {
        *q = hw_proc_skip_blank(*q, eol);
        return hw_proc_scan_u64(q, eol, ret);
}

int hw_net_parse_default_route(const char *text, size_t len, char *ifname, size_t size) {
        const char *p = text, *end = text + len, *eol, *q, *name, *best_name = NULL;
        uint64_t dest, gw, flags, refcnt, use, metric, mask, best = 0;
        size_t nlen, best_len = 0;

        /* Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window
         * IRTT; the header line fails the hex scan of "Destination". */
        for (; p < end; p = eol < end ? eol + 1 : end) {
                eol = hw_proc_eol(p, end);
                name = hw_proc_skip_blank(p, eol);
                for (q = name; q < eol && *q != '\t' && *q != ' '; q++)
                        ;
                nlen = (size_t)(q - name);
                if (!valid_ifname(name, nlen) || !next_hex(&q, eol, &dest) || !next_hex(&q, eol, &gw) ||
                    !next_hex(&q, eol, &flags) || !next_dec(&q, eol, &refcnt) || !next_dec(&q, eol, &use) ||
                    !next_dec(&q, eol, &metric) || !next_hex(&q, eol, &mask))
                        continue;
                /* RTF_UP (0x1), destination and mask 0: a default route. */
                if (dest == 0 && mask == 0 && (flags & 1) && (!best_name || metric < best)) {
                        best = metric;
                        best_name = name;
                        best_len = nlen;
                }
        }
        if (!best_name)
                return -ENOENT;
        if (best_len >= size)
                best_len = size - 1;
        memcpy(ifname, best_name, best_len);
        ifname[best_len] = '\0';
        return 0;
}

static bool is_link_local(const struct sockaddr_in *sin) {
        return (ntohl(sin->sin_addr.s_addr) >> 16) == 0xa9fe;
}

static bool is_loopback(const struct sockaddr_in *sin) {
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
}

/* "eth0" matches "eth0" and the alias label "eth0:1". */
static bool name_matches(const char *ifa_name, const char *ifname) {
        size_t n = strlen(ifname);

        return strncmp(ifa_name, ifname, n) == 0 && (ifa_name[n] == '\0' || ifa_name[n] == ':');
}

int hw_net_pick_ipv4(const struct ifaddrs *list, const char *ifname, char *out, size_t size) {
        const struct ifaddrs *i;
        const struct sockaddr_in *sin;
        int pass;

        /* Pass 1: the default-route interface; pass 2: any usable IPv4. */
        for (pass = ifname && ifname[0] ? 1 : 2; pass <= 2; pass++) {
                for (i = list; i; i = i->ifa_next) {
                        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_name)
                                continue;
                        sin = (const struct sockaddr_in *)(const void *)i->ifa_addr;
                        if (is_link_local(sin) || sin->sin_addr.s_addr == 0)
                                continue;
                        if (pass == 1 && !name_matches(i->ifa_name, ifname))
                                continue;
                        if (pass == 2 && ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP) ||
                                          is_loopback(sin)))
                                continue;
                        if (inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)size))
                                return 0;
                }
        }
        return -ENOENT;
}

int hw_net_private_ip(int root_fd, char *out, size_t size) {
        char ifname[IFNAMSIZ] = "", buf[NET_ROUTE_BUF];
        struct ifaddrs *ifa = NULL;
        hw_proc_text t;
        int r;

        if (hw_proc_read(root_fd, "proc/net/route", buf, sizeof(buf), NET_ROUTE_MAX, &t) >= 0) {
                if (hw_net_parse_default_route(t.data, t.len, ifname, sizeof(ifname)) < 0)
                        ifname[0] = '\0';
                hw_proc_text_done(&t);
        }
        util_strlcpy(out, "127.0.0.1", size);
        if (getifaddrs(&ifa) < 0) {
                r = -errno;
                goto out;
        }
        r = hw_net_pick_ipv4(ifa, ifname, out, size);
        freeifaddrs(ifa);
out:
        return r;
}
