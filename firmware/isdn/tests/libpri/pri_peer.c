/*
 * pri_peer: libpri on one end of a datagram socket (fd 0), for gw-isdn's
 * interop tests (firmware/isdn/tests/libpri.rs builds and runs it).
 *
 *   pri_peer <network|user> <pri|bri-ptp|bri-ptmp> [debug]
 *
 * Every datagram on fd 0 starts with a kind octet:
 *   'F' + LAPD frame without FCS      (both ways: the D channel)
 *   'C' + command line                (test -> peer: a scenario step)
 *   'E' + event line                  (peer -> test: what libpri reported)
 *
 * Commands (calls are named by a small index the peer prints as id=N):
 *   call <called> <calling> <channel|0> <exclusive 0|1> <complete 0|1>
 *   alert <id> | proceed <id> | setupack <id> | answer <id>
 *   info <id> <digits>        overlap digits (INFORMATION)
 *   hangup <id> <cause>
 *   restart                   RESTART of the whole interface
 *   reset <channel>           RESTART of one channel
 *
 * The switch variant is EuroISDN E1 unless PRI_PEER_SWITCH says "ni2" or
 * "qsig" (the same variants as gw-isdn's call::Variant).
 *
 * libpri hands frames to the write callback with two octets of room for an
 * FCS and expects two such octets after each frame it reads.
 */
#include <errno.h>
#include <libpri.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAXCALLS 16
/* libpri event channel: number | span << 8 | explicit << 16, or -1. */
#define PRI_CHANNEL(c) ((c) & 0xff)

static unsigned char inbuf[600];
static int inlen;
static q931_call *calls[MAXCALLS];
static int chans[MAXCALLS];

static void emit(const char *fmt, ...)
{
	char buf[700];
	va_list ap;
	buf[0] = 'E';
	va_start(ap, fmt);
	int n = vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	send(0, buf, n + 1, 0);
}

static int io_read(struct pri *pri, void *buf, int buflen)
{
	(void)pri;
	if (inlen <= 0 || inlen + 2 > buflen)
		return -1;
	memcpy(buf, inbuf, inlen);
	memset((char *)buf + inlen, 0, 2);
	int n = inlen + 2;
	inlen = 0;
	return n;
}

static int io_write(struct pri *pri, void *buf, int buflen)
{
	(void)pri;
	unsigned char out[600];
	if (buflen < 3 || buflen - 2 + 1 > (int)sizeof(out))
		return -1;
	out[0] = 'F';
	memcpy(out + 1, buf, buflen - 2);
	send(0, out, buflen - 1, 0);
	return buflen;
}

static int find(q931_call *c)
{
	for (int i = 0; i < MAXCALLS; i++)
		if (calls[i] == c && c)
			return i;
	return -1;
}

static int add(q931_call *c, int chan)
{
	int i = find(c);
	if (i >= 0)
		return i;
	for (i = 0; i < MAXCALLS; i++)
		if (!calls[i]) {
			calls[i] = c;
			chans[i] = chan;
			return i;
		}
	return -1;
}

static void msg_cb(struct pri *pri, char *s)
{
	(void)pri;
	fprintf(stderr, "%s", s);
}

static void handle(struct pri *pri, pri_event *e)
{
	int id;
	if (!e)
		return;
	switch (e->e) {
	case PRI_EVENT_DCHAN_UP:
		emit("dchan_up");
		break;
	case PRI_EVENT_DCHAN_DOWN:
		emit("dchan_down");
		break;
	case PRI_EVENT_RING:
		id = add(e->ring.call, PRI_CHANNEL(e->ring.channel));
		emit("ring id=%d chan=%d called=%s calledplan=%d calling=%s callingplan=%d pres=%d complete=%d cref=%d",
		     id, e->ring.channel < 0 ? -1 : PRI_CHANNEL(e->ring.channel), e->ring.callednum, e->ring.calledplan,
		     e->ring.callingnum, e->ring.callingplan, e->ring.callingpres, e->ring.complete, e->ring.cref);
		break;
	case PRI_EVENT_INFO_RECEIVED:
		emit("info id=%d digits=%s complete=%d", find(e->ring.call), e->ring.callednum, e->ring.complete);
		break;
	case PRI_EVENT_SETUP_ACK:
		id = find(e->setup_ack.call);
		emit("setup_ack id=%d chan=%d", id, PRI_CHANNEL(e->setup_ack.channel));
		break;
	case PRI_EVENT_PROCEEDING:
		emit("proceeding id=%d chan=%d", find(e->proceeding.call), PRI_CHANNEL(e->proceeding.channel));
		break;
	case PRI_EVENT_RINGING:
		emit("ringing id=%d chan=%d", find(e->ringing.call), PRI_CHANNEL(e->ringing.channel));
		break;
	case PRI_EVENT_ANSWER:
		emit("answer id=%d chan=%d", find(e->answer.call), PRI_CHANNEL(e->answer.channel));
		break;
	case PRI_EVENT_CONNECT_ACK:
		emit("connect_ack id=%d", find(e->connect_ack.call));
		break;
	case PRI_EVENT_HANGUP_REQ:
		/* DISCONNECT from the peer: clear as Asterisk does. */
		id = find(e->hangup.call);
		emit("hangup_req id=%d cause=%d", id, e->hangup.cause);
		pri_hangup(pri, e->hangup.call, e->hangup.cause);
		break;
	case PRI_EVENT_HANGUP:
		id = find(e->hangup.call);
		emit("hangup id=%d cause=%d", id, e->hangup.cause);
		if (id >= 0) {
			pri_hangup(pri, e->hangup.call, e->hangup.cause);
			calls[id] = NULL;
		}
		break;
	case PRI_EVENT_HANGUP_ACK:
		id = find(e->hangup.call);
		emit("hangup_ack id=%d cause=%d", id, e->hangup.cause);
		if (id >= 0)
			calls[id] = NULL;
		break;
	case PRI_EVENT_RESTART:
		emit("restart chan=%d", e->restart.channel < 0 ? -1 : PRI_CHANNEL(e->restart.channel));
		break;
	case PRI_EVENT_RESTART_ACK:
		emit("restart_ack chan=%d", e->restartack.channel < 0 ? -1 : PRI_CHANNEL(e->restartack.channel));
		break;
	case PRI_EVENT_KEYPAD_DIGIT:
		emit("keypad id=%d digits=%s", find(e->digit.call), e->digit.digits);
		break;
	default:
		emit("event %d", e->e);
		break;
	}
}

static void command(struct pri *pri, char *line)
{
	char verb[16] = "", a[64] = "", b[64] = "";
	int c = 0, d = 0, f = 0, id;
	sscanf(line, "%15s", verb);
	if (!strcmp(verb, "call")) {
		if (sscanf(line, "%*s %63s %63s %d %d %d", a, b, &c, &d, &f) != 5) {
			emit("error bad call");
			return;
		}
		q931_call *call = pri_new_call(pri);
		struct pri_sr *sr = pri_sr_new();
		pri_sr_set_channel(sr, c, d, 1);
		pri_sr_set_bearer(sr, PRI_TRANS_CAP_SPEECH, PRI_LAYER_1_ALAW);
		pri_sr_set_called(sr, a, PRI_NATIONAL_ISDN, f);
		pri_sr_set_caller(sr, b, NULL, PRI_NATIONAL_ISDN, PRES_ALLOWED_USER_NUMBER_NOT_SCREENED);
		id = add(call, c);
		int r = pri_setup(pri, call, sr);
		pri_sr_free(sr);
		emit("placed id=%d res=%d", id, r);
		return;
	}
	if (!strcmp(verb, "restart")) {
		emit("done restart res=%d", pri_restart(pri));
		return;
	}
	if (!strcmp(verb, "reset")) {
		sscanf(line, "%*s %d", &c);
		emit("done reset res=%d", pri_reset(pri, c));
		return;
	}
	if (sscanf(line, "%*s %d", &id) != 1 || id < 0 || id >= MAXCALLS || !calls[id]) {
		emit("error no call: %s", line);
		return;
	}
	q931_call *call = calls[id];
	int ch = chans[id];
	int r = -1;
	if (!strcmp(verb, "alert"))
		r = pri_acknowledge(pri, call, ch, 0);
	else if (!strcmp(verb, "proceed"))
		r = pri_proceeding(pri, call, ch, 0);
	else if (!strcmp(verb, "setupack"))
		r = pri_setup_ack(pri, call, ch, 0, 0);
	else if (!strcmp(verb, "answer"))
		r = pri_answer(pri, call, ch, 0);
	else if (!strcmp(verb, "info")) {
		sscanf(line, "%*s %*d %63s", a);
		r = 0;
		for (char *p = a; *p; p++)
			r |= pri_information(pri, call, *p);
	} else if (!strcmp(verb, "hangup")) {
		sscanf(line, "%*s %*d %d", &c);
		r = pri_hangup(pri, call, c);
	}
	emit("done %s id=%d res=%d", verb, id, r);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: pri_peer <network|user> <pri|bri-ptp|bri-ptmp> [debug]\n");
		return 2;
	}
	/* libpri draws TEI request references (Ri) from random(): TEs on one
	 * bus must not draw the same ones. */
	srandom((unsigned)getpid());
	int node = !strcmp(argv[1], "network") ? PRI_NETWORK : PRI_CPE;
	struct pri *pri;
	int sw = PRI_SWITCH_EUROISDN_E1;
	const char *swname = getenv("PRI_PEER_SWITCH");
	if (swname && !strcmp(swname, "ni2"))
		sw = PRI_SWITCH_NI2;
	else if (swname && !strcmp(swname, "qsig"))
		sw = PRI_SWITCH_QSIG;
	pri_set_message(msg_cb);
	pri_set_error(msg_cb);
	if (!strcmp(argv[2], "pri"))
		pri = pri_new_cb(0, node, sw, io_read, io_write, NULL);
	else
		pri = pri_new_bri_cb(0, !strcmp(argv[2], "bri-ptp"), node, sw, io_read, io_write, NULL);
	if (!pri) {
		fprintf(stderr, "pri_new failed\n");
		return 1;
	}
	pri_set_overlapdial(pri, 1);
	pri_set_timer(pri, PRI_TIMER_T200, 500);
	if (argc > 3)
		pri_set_debug(pri, PRI_DEBUG_Q921_STATE | PRI_DEBUG_Q931_DUMP | PRI_DEBUG_Q931_STATE);
	emit("ready");
	for (;;) {
		struct timeval *next = pri_schedule_next(pri);
		int timeout = 1000;
		if (next) {
			struct timeval now;
			gettimeofday(&now, NULL);
			long ms = (next->tv_sec - now.tv_sec) * 1000 + (next->tv_usec - now.tv_usec) / 1000;
			timeout = ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
		}
		struct pollfd p = { .fd = 0, .events = POLLIN };
		int n = poll(&p, 1, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0) {
			unsigned char buf[600];
			ssize_t len = recv(0, buf, sizeof(buf) - 1, 0);
			if (len <= 0)
				return 0; /* the test went away */
			if (buf[0] == 'F' && len > 1 && len - 1 <= 512) {
				memcpy(inbuf, buf + 1, len - 1);
				inlen = len - 1;
				handle(pri, pri_check_event(pri));
			} else if (buf[0] == 'C') {
				buf[len] = 0;
				command(pri, (char *)buf + 1);
			}
		}
		handle(pri, pri_schedule_run(pri));
	}
}
