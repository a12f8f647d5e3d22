# The Valkey connection of a backend, against redis-servers of this test's
# own on 127.0.0.1 (and one on a unix socket), each session pointing
# stampede.valkey_url at one of them:
#
#   - not configured by default; reachable with its password; a wrong
#     password is refused and never shown; host names are refused;
#   - a unix socket;
#   - the circuit breaker: a hung Valkey (a redis-server stopped with
#     SIGSTOP: the kernel still accepts connections, nothing answers) costs
#     the first call stampede.valkey_timeout and the next ones nothing,
#     until stampede.valkey_retry_interval passes; a Valkey stopped and
#     started again on its port is used again, without a restart;
#   - statement_timeout and cancel during a command Valkey never answers
#     act at once;
#   - only superusers see or set stampede.valkey_url.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(new_node start_call call_result);
use Test::More;
use Time::HiRes qw(time sleep);

my $node = new_node('valkey_connection', '');

# A hung Valkey, for the cases that need one.
my $hung = StampedeTest::Valkey->new;
$hung->hang;

my $STATUS = "SELECT valkey_configured::text || '|' || coalesce(valkey_reachable::text, 'null') "
  . "|| '|' || valkey_circuit || '|' || coalesce(valkey_error, '') FROM stampede_status()";

# The SETs that point a session at URL, with stampede.* SETTINGS.
sub set_url
{
	my ($url, %settings) = @_;
	return join('', "SET stampede.valkey_url = '$url';\n",
		map { "SET stampede.$_ = '$settings{$_}';\n" } sort keys %settings);
}

# stampede_status() of a fresh session pointed at URL: configured,
# reachable, circuit and error, split.
sub status_of
{
	my ($url, %settings) = @_;
	return split(/\|/, $node->safe_psql('postgres', set_url($url, %settings) . $STATUS), 4);
}

# A session of its own that reports its errors' SQLSTATE.
sub session
{
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('\set VERBOSITY verbose');
	return $s;
}

# A query in SESSION: (output, stderr, seconds it took).
sub timed
{
	my ($s, $sql) = @_;
	$s->{stderr} = '';
	my $started = time;
	my $out = $s->query($sql);
	my $took = time - $started;
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err, $took);
}

is($node->safe_psql('postgres', $STATUS), 'false|null|none|', 'not configured by default');

{
	my $valkey = StampedeTest::Valkey->new(password => 's3cret');
	my @got = status_of('redis://:s3cret@127.0.0.1:' . $valkey->port . '/0');
	is(join('|', @got[ 0 .. 2 ]), 'true|true|closed', 'reachable with its password');

	@got = status_of('redis://someone:n0tit@127.0.0.1:' . $valkey->port);
	ok($got[1] eq 'false' && $got[3] =~ /AUTH refused/, 'a wrong password is refused')
	  or diag(join('|', @got));
	unlike($got[3], qr/n0tit|s3cret/, 'the error shows no password');
	$valkey->stop;
}

{
	# Refused when set (a name would be resolved by a lookup no cancel can
	# interrupt), with why, and without quoting the URL's password.
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\n" . set_url('redis://:hunter2pw@valkey.example:6379'));
	like($err, qr/ERROR:  22023: invalid value for parameter "stampede.valkey_url"/,
		'a host name is refused when set, 22023');
	like($err, qr/DETAIL:  .*IP address/, 'and the detail says why');
	unlike($err, qr/hunter2pw/, 'and the message does not quote its password');
	foreach my $bad ('redis://127.0.0.1:6379x', 'redis://127.0.0.1:99999', 'redis://127.0.0.1/x',
		'http://127.0.0.1', 'unix://relative/path', 'unix:///tmp/s?db=x')
	{
		($rc, $out, $err) = $node->psql('postgres', set_url($bad));
		like($err, qr/invalid value for parameter "stampede.valkey_url"/, "refused when set: $bad");
	}
	foreach my $good ('redis://127.0.0.1', 'redis://user:p@ss:w@127.0.0.1:6380/2',
		'valkey://[::1]:6379', 'unix:///tmp/v.sock?db=3', 'redis://localhost:6379/')
	{
		($rc, $out, $err) = $node->psql('postgres', set_url($good) . 'SELECT 1');
		is($err, '', "accepted when set: $good");
	}
}

{
	my $valkey = StampedeTest::Valkey->new(unix_socket => 1);
	my @got = status_of('unix://' . $valkey->socket_path . '?db=1');
	is(join('|', @got[ 0 .. 2 ]), 'true|true|closed', 'reachable on a unix socket');
	$valkey->stop;
}

# ---- the circuit breaker ----
{
	my $s = session();
	$s->query_safe(set_url($hung->url, valkey_timeout => '300ms', valkey_retry_interval => '60s'));
	my ($got, $err, $first) = timed($s, $STATUS);
	my @got = split(/\|/, $got, 4);
	ok($got[1] eq 'false' && $got[3] =~ /timed out/, 'a hung Valkey: the first call times out')
	  or diag("$got $err");
	ok($first > 0.25 && $first < 2.0,
		sprintf('a hung Valkey: the first call took %.3f s (stampede.valkey_timeout is 300 ms)', $first));
	my $second;
	($got, $err, $second) = timed($s, $STATUS);
	@got = split(/\|/, $got, 4);
	is($got[2], 'open', 'a hung Valkey: the circuit is open');
	ok($second < 0.1, sprintf('with the circuit open a call took %.3f s', $second));
	$s->quit;
}

{
	my $s = session();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	$s->query_safe(set_url("redis://127.0.0.1:$port", valkey_retry_interval => '200ms'));
	my @got = split(/\|/, $s->query_safe($STATUS), 4);
	is($got[1], 'false', "nothing listens on port $port: not reachable");
	my $valkey = StampedeTest::Valkey->new;
	$s->query_safe(set_url($valkey->url, valkey_retry_interval => '200ms'));
	@got = split(/\|/, $s->query_safe($STATUS), 4);
	is($got[1], 'true', 'a new server is tried at once');
	$valkey->stop;
	@got = split(/\|/, $s->query_safe($STATUS), 4);
	is("$got[1]|$got[2]", 'false|open', 'a stopped server: not reachable, the circuit open');
	# The same server back on the same port: used again, no restart, no new setting.
	$valkey->start;
	my $deadline = time + 20;
	sleep(0.05)
	  while (split(/\|/, $s->query_safe($STATUS)))[1] ne 'true' && time < $deadline;
	is((split(/\|/, $s->query_safe($STATUS)))[1], 'true', 'Valkey back on its port is used again');
	$s->quit;
	$valkey->stop;
}

# ---- statement_timeout and cancel during a command Valkey never answers ----
{
	my $s = session();
	$s->query_safe(set_url($hung->url, valkey_timeout => '30s'));
	$s->query_safe("SET statement_timeout = '200ms'");
	my ($got, $err, $took) = timed($s, $STATUS);
	like($err, qr/ERROR:  57014/, 'statement_timeout during a hung Valkey command: 57014');
	ok($took < 0.3, sprintf('statement_timeout of 200 ms took %.3f s', $took));
	my $valkey = StampedeTest::Valkey->new;
	$s->query_safe("SET statement_timeout = 0;\n" . set_url($valkey->url));
	is((split(/\|/, $s->query_safe($STATUS)))[1], 'true',
		'after the timeout, the connection is made again (another Valkey)');
	$s->quit;
	$valkey->stop;
}

{
	my ($call, $pid) = start_call($node, 'SELECT valkey_reachable FROM stampede_status()',
		"stampede.valkey_url = '" . $hung->url . "'", "stampede.valkey_timeout = '30s'");
	$node->poll_query_until('postgres',
		"SELECT wait_event = 'Extension' FROM pg_stat_activity WHERE pid = $pid")
	  or die 'the call never waited on Valkey';
	my $cancelled = time;
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	my $r = call_result($call);
	is($r->{code}, '57014', 'cancel during a hung Valkey command: 57014') or diag($r->{err});
	ok($r->{ended} - $cancelled < 0.1,
		sprintf('the cancel took %.3f s', $r->{ended} - $cancelled));
	$call->quit;
}

# ---- only superusers see or set the URL ----
{
	$node->safe_psql('postgres', 'CREATE ROLE regress_stampede_valkey');
	foreach my $sql ('SHOW stampede.valkey_url', "SET stampede.valkey_url = 'redis://127.0.0.1:1'")
	{
		my ($rc, $out, $err) = $node->psql('postgres',
			"\\set VERBOSITY verbose\nSET ROLE regress_stampede_valkey;\n$sql;");
		like($err, qr/ERROR:  42501/, "a plain role may not $sql (42501)");
	}
	is( $node->safe_psql('postgres',
			"SET ROLE regress_stampede_valkey;\n"
			  . "SELECT count(*) FROM pg_settings WHERE name = 'stampede.valkey_url'"),
		'0', 'pg_settings does not show the URL to a plain role');
}

$hung->stop;
done_testing();
