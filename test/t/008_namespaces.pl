# Two independent clusters (one with stampede preloaded, one without) that
# set the same stampede.namespace share entries through one Valkey only on
# purpose:
#
#   - each seals its entries with the secret of its own data directory: a
#     namespace alone does not make them take each other's;
#   - the same stampede.valkey_secret on both does: one's rows answer the
#     other's call for the same key and query;
#   - the reading cluster's rights decide (42501 for a role without them
#     there), another query text under the same key is not the entry's,
#     and values of types whose OIDs differ between clusters (an enum) are
#     not shared.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use StampedeTest qw(new_node call_sql);
use Test::More;

my $valkey = StampedeTest::Valkey->new;
my $setup = q{
CREATE TYPE xc_mood AS ENUM ('sad', 'glad');
CREATE TABLE xc_items (id int, name text, mood xc_mood);
CREATE ROLE xc_nobody;
};
my %node = (
	one => new_node('one', '', setup => $setup),
	other => new_node('other', '', preload => 0, setup => $setup));
$node{$_}->safe_psql('postgres', "INSERT INTO xc_items VALUES (1, '$_', 'glad')")
  foreach keys %node;

# A session on each, in the namespace, that reports its errors' SQLSTATE
# (and not the NOTICE of the server without preloading: 006 looks at it).
my %s;
foreach my $name (keys %node)
{
	$s{$name} = $node{$name}->background_psql('postgres', on_error_stop => 0);
	$s{$name}->query_safe("\\set VERBOSITY verbose\n"
		  . "SET client_min_messages = warning;\n"
		  . "SET stampede.valkey_url = '@{[ $valkey->url ]}';\n"
		  . "SET stampede.namespace = 'shared-on-purpose';");
}

my $key = 'xc';

# A call in NAME's session: its rows.
sub call
{
	my ($name, $query, $columns) = @_;
	return $s{$name}->query_safe(call_sql($key, $query, $columns // 'id int, name text'));
}

my $names = 'SELECT id, name FROM xc_items';
is(call('one', $names), '1|one', "the first cluster's own rows");
is(call('other', $names), '1|other',
	"a cluster does not take entries sealed with another cluster's secret");

# The same secret, set by a superuser on both, makes them take each other's.
$s{$_}->query_safe("SET stampede.valkey_secret = 'xc-secret'") foreach keys %s;
$s{one}->query_safe("SELECT stampede_invalidate('$key')");
is(call('one', $names), '1|one', "the first cluster's own rows, sealed with the set secret");
is(call('other', $names), '1|one', "with the same secret, the other cluster takes the first's rows");

# The reading cluster's rights decide: xc_nobody may not read xc_items there.
{
	my $s = $s{other};
	$s->{stderr} = '';
	$s->query("SET ROLE xc_nobody;\n" . call_sql($key, $names, 'id int, name text'));
	like($s->{stderr}, qr/ERROR:  42501/,
		"a role without rights on the reading cluster does not get the rows (42501)");
	$s->{stderr} = '';
	$s->query_safe('RESET ROLE');
}

is(call('other', "SELECT id, name || '!' FROM xc_items"), '1|other!',
	'an entry for another query text under the same key is not used');

# An enum's values are OIDs of the cluster that wrote them.
$key = 'xc-mood';
my $moods = 'SELECT id, mood FROM xc_items';
is(call('one', $moods, 'id int, mood xc_mood'), '1|glad', "the first cluster's enum value");
$node{other}->safe_psql('postgres', "UPDATE xc_items SET mood = 'sad'");
is(call('other', $moods, 'id int, mood xc_mood'), '1|sad',
	'an enum value written by another cluster is not served');

$_->quit foreach values %s;
$valkey->stop;
done_testing();
