# A server without shared_preload_libraries: no shared memory, so Valkey
# alone does what the local store and its advisory locks do otherwise.
#
#   - 20 sessions pointed at a redis-server of this test's own call a cold
#     key at once: its query runs once, every session gets the same rows;
#     a later call is a hit; each backend says once (a NOTICE) what is
#     missing; stampede_status says valkey, not preloaded;
#   - with nothing listening at stampede.valkey_url, each call runs its
#     query (uncached), and stampede_status says so.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(new_node start_call call_result);
use Test::More;

my $START = 781;    # the start line of the 20 sessions

my $plain = new_node('plain', '', preload => 0, setup => 'CREATE SEQUENCE np_runs;');

sub settings
{
	my ($port) = @_;
	return ("stampede.valkey_url = 'redis://127.0.0.1:$port'",
		"stampede.backoff_base = '20ms'", "stampede.backoff_max = '200ms'");
}

sub np_call
{
	my ($key, $sleep) = @_;
	return StampedeTest::call_sql($key,
		"SELECT nextval('np_runs') AS run FROM pg_sleep(" . ($sleep // 0) . ')');
}

sub next_run { return $plain->safe_psql('postgres', "SELECT nextval('np_runs')"); }

# ---- Valkey alone runs a cold key once ----
{
	my $valkey = StampedeTest::Valkey->new;
	my $before = next_run();
	my $start = $plain->background_psql('postgres');
	$start->query_safe("SELECT pg_advisory_lock($START)");
	# Each session first waits at the start line, then all call at once.
	my @calls = map {
		[
			start_call($plain,
				"DO \$\$BEGIN PERFORM pg_advisory_lock_shared($START); "
				  . "PERFORM pg_advisory_unlock_shared($START); END\$\$;\n"
				  . np_call('np:herd', 0.3),
				settings($valkey->port))
		]
	} 1 .. 20;
	$plain->poll_query_until('postgres',
		"SELECT count(*) = 20 FROM pg_locks WHERE locktype = 'advisory' AND objid = $START AND NOT granted")
	  or die 'the 20 sessions did not reach the start line';
	$start->query_safe("SELECT pg_advisory_unlock($START)");
	$start->quit;
	my @results = map { call_result($_->[0]) } @calls;
	my @errors = grep { defined $_->{code} } @results;
	is(scalar(@errors), 0, '20 sessions without preloading called without an error')
	  or diag(join("\n", map { $_->{err} } @errors[ 0 .. 2 ]));
	my %rows = map { $_->{out} => 1 } @results;
	ok(keys(%rows) == 1 && $results[0]{out} =~ /^\d+$/, 'the 20 sessions got the same rows')
	  or diag(join(' ', keys %rows));
	is(next_run() - $before - 1, 1, 'the query ran once for 20 sessions');

	# A hit now, from Valkey.  (Without preloading, a backend knows of DDL
	# only since its first call: rows stored before that may be refilled
	# once.)
	my $first = $calls[0][0];
	my $notices = $results[0]{err};
	$first->{stderr} = '';
	my $rows = $first->query(np_call('np:herd'));
	$before = next_run();
	is($first->query(np_call('np:herd')) . ' ' . next_run(),
		"$rows " . ($before + 1), 'a later call is a hit: the same rows, no execution');
	$notices .= $first->{stderr};
	my $said = () = $notices =~ /uses Valkey alone/g;
	is($said, 1, 'the first call of a backend says once that it uses Valkey alone (3 calls)')
	  or diag($notices);
	$_->[0]->quit foreach @calls;
	is( $plain->safe_psql('postgres',
			join('', map { "SET $_;\n" } settings($valkey->port))
			  . "SELECT mode || ' ' || preloaded FROM stampede_status()"),
		'valkey false',
		'stampede_status says valkey, not preloaded');
	$valkey->stop;
}

# ---- without Valkey: uncached ----
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();    # nothing listens there
	my @out = split(
		/\n/,
		$plain->safe_psql(
			'postgres',
			join('', map { "SET $_;\n" } settings($port))
			  . "SELECT nextval('np_runs');\n"
			  . np_call('np:down') . ";\n"
			  . np_call('np:down') . ";\n"
			  . "SELECT mode || ' ' || preloaded FROM stampede_status();"));
	is("$out[1] $out[2]", ($out[0] + 1) . ' ' . ($out[0] + 2),
		'Valkey down, not preloaded: each call runs the query (uncached)');
	is($out[3], 'uncached false', 'stampede_status says uncached, not preloaded');
}

done_testing();
